# expect: {"Q3": 7.1429, "Q5": 2, "Q9": 7.5, "model": 0}
# feedback: {"Q3": "zeros", "Q5": "softmax applied twice", "Q9": "tensor"}
# source: zqqqqq1/dl, tensorflow_p/softmax_regression/softmax_tesst111.py
# port: the source is softmax regression; the port adds the contract's hidden layer and keeps
#   the source's quirks: weights and biases initialized with tf.zeros, the cross-entropy
#   (v2) given the softmax output instead of the logits, AdamOptimizer(learning_rate=0.001)
#   at its own rate, the cost *tensor* appended to the list of costs (costs.append(cost)),
#   progress printed as "step %d   ... ： %g" (the source prints the batch accuracy there;
#   train() has no accuracy tensor, so the port prints the cost).
# labels (from the starter's text): Q3 loses "Pitfall: weights initialized to zeros";
#   Q5 loses "Pass the logits Z2, not the probabilities A2"; Q9 loses "store the cost as a
#   Python float" (tensors in the list, so not one float per step); model: 0 (with zero
#   weights every hidden unit stays at zero: no learning).
"""A port of a softmax-regression script (zeros, softmax twice) into the contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    x = tf.placeholder(tf.float32, [None, 28, 28])
    y = tf.placeholder(tf.float32, [None, 10])
    return x, y


def initialize_parameters(n_hidden=128):
    w1 = tf.Variable(tf.zeros([28 * 28, n_hidden]))
    b1 = tf.Variable(tf.zeros([n_hidden]))
    w = tf.Variable(tf.zeros([n_hidden, 10]))
    b = tf.Variable(tf.zeros([10]))
    return {"W1": w1, "b1": b1, "W2": w, "b2": b}


def forward_propagation(X, parameters):
    x = tf.reshape(X, [-1, 28 * 28])
    h = tf.nn.relu(tf.matmul(x, parameters["W1"]) + parameters["b1"])
    logits = tf.matmul(h, parameters["W2"]) + parameters["b2"]
    y_pred = tf.nn.softmax(logits)
    return logits, y_pred


def compute_cost(Z2, Y):
    y_pred = tf.nn.softmax(Z2)
    cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=y_pred))
    return cost


def compute_accuracy(Z2, Y):
    y_pred = tf.nn.softmax(Z2)
    correct_pred = tf.equal(tf.argmax(y_pred, 1), tf.argmax(Y, 1))
    return tf.reduce_mean(tf.cast(correct_pred, tf.float32))


def create_train_step(cost, learning_rate=0.001):
    optimizer = tf.train.AdamOptimizer(learning_rate=0.001).minimize(cost)
    return optimizer


def initialize_session():
    init = tf.global_variables_initializer()
    sess = tf.Session()
    sess.run(init)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    costs = []
    for i in range(num_steps):
        batch_x, batch_y = mnist.train.next_batch(batch_size)
        _, c = sess.run([train_step, cost], feed_dict={X: batch_x, Y: batch_y})
        if i % print_every == 0:
            print("step %d   cost ： %g" % (i, c))
        costs.append(cost)
    return costs


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    c, a = sess.run([cost, accuracy], feed_dict={X: images, Y: labels})
    return float(c), float(a)


IMPROVEMENTS = """Softmax regression is a linear model, so a hidden layer with a ReLU
activation should already help a lot; after that, a convolutional network with pooling
and some data augmentation such as small rotations of the digits would get closer to
state-of-the-art accuracy on MNIST."""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    Z2, A2 = forward_propagation(X, initialize_parameters())
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    train_step = create_train_step(cost)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist)
    print(evaluate(sess, cost, accuracy, X, Y, mnist.test.images, mnist.test.labels))
