# expect: {"Q6": 2, "Q9": "any"}
# feedback: {"Q6": "axis 0"}
# source: RaymondLZhou/deep-neural-networks, src/tfNetwork/initialize.py, forward.py, cost.py and
#   deepNetwork.py (the deeplearning.ai "TensorFlow Tutorial" layout)
# port: the source's style kept: tf.get_variable with a Xavier (Glorot) initializer and
#   zeros_initializer biases (of shape [1, n]: the source's column biases [n, 1] turned to the
#   contract's rows), the v1 softmax cross-entropy averaged with reduce_mean,
#   AdamOptimizer(learning_rate=learning_rate), and two quirks: the accuracy takes
#   tf.argmax(Z2) and tf.argmax(Y) without an axis (right in the source's column layout,
#   across the batch in this row layout), and the printed "Cost after epoch %i: %f" adds
#   minibatch_cost / minibatch_size (the batch size, not the number of batches).
# labels (from the starter's text): Q6 loses "tf.argmax(Z2, axis=1) ... axis 0 would run
#   across the batch". Q9: unasserted, a judgment call: the printed number is the sum of the
#   batch costs divided by the batch size, a mis-scaled cost; whether a person would call
#   it "the cost" is not the text's to say. Everything else full marks.
"""A port of a deeplearning.ai-style TensorFlow network into the contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    X = tf.placeholder(tf.float32, [None, 28, 28], name='X')
    Y = tf.placeholder(tf.float32, [None, 10], name='Y')
    return X, Y


def initialize_parameters(n_hidden=128):
    W1 = tf.get_variable("W1", [784, n_hidden], initializer=tf.glorot_uniform_initializer())
    b1 = tf.get_variable("b1", [1, n_hidden], initializer=tf.zeros_initializer())
    W2 = tf.get_variable("W2", [n_hidden, 10], initializer=tf.glorot_uniform_initializer())
    b2 = tf.get_variable("b2", [1, 10], initializer=tf.zeros_initializer())
    parameters = {"W1": W1,
                  "b1": b1,
                  "W2": W2,
                  "b2": b2}
    return parameters


def forward_propagation(X, parameters):
    W1 = parameters['W1']
    b1 = parameters['b1']
    W2 = parameters['W2']
    b2 = parameters['b2']
    Z1 = tf.add(tf.matmul(tf.reshape(X, [-1, 784]), W1), b1)
    A1 = tf.nn.relu(Z1)
    Z2 = tf.add(tf.matmul(A1, W2), b2)
    return Z2, tf.nn.softmax(Z2)


def compute_cost(Z2, Y):
    logits = Z2
    labels = Y
    cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=labels))
    return cost


def compute_accuracy(Z2, Y):
    correct_prediction = tf.equal(tf.argmax(Z2), tf.argmax(Y))
    accuracy = tf.reduce_mean(tf.cast(correct_prediction, "float"))
    return accuracy


def create_train_step(cost, learning_rate=0.001):
    optimizer = tf.train.AdamOptimizer(learning_rate=learning_rate).minimize(cost)
    return optimizer


def initialize_session():
    init = tf.global_variables_initializer()
    sess = tf.Session()
    sess.run(init)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    costs = []
    epoch_cost = 0
    for epoch in range(num_steps):
        (minibatch_X, minibatch_Y) = mnist.train.next_batch(batch_size)
        _, minibatch_cost = sess.run([train_step, cost], feed_dict={X: minibatch_X, Y: minibatch_Y})
        costs.append(float(minibatch_cost))
        epoch_cost += minibatch_cost / batch_size
        if epoch % print_every == 0:
            print("Cost after epoch %i: %f" % (epoch, epoch_cost))
            epoch_cost = 0
    print("Parameters have been trained!")
    return costs


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    train_cost = cost.eval({X: images, Y: labels}, session=sess)
    train_accuracy = accuracy.eval({X: images, Y: labels}, session=sess)
    return float(train_cost), float(train_accuracy)


IMPROVEMENTS = """Add L2 regularization and dropout to close the gap between train and
test accuracy, tune the learning rate and the minibatch size, and try a deeper network
with more hidden units, or a convolutional network, trained for more epochs."""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    Z2, A2 = forward_propagation(X, initialize_parameters())
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    train_step = create_train_step(cost, 0.0001)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist)
    print("Test Accuracy:", evaluate(sess, cost, accuracy, X, Y, mnist.test.images,
                                     mnist.test.labels)[1])
