# expect: {"Q3": "any", "Q5": 2}
# feedback: {"Q5": "binary cross-entropy", "Q7": "advice"}
# source: hieunq95/my-rl, test/nn_with_tf_tutorial.py (a copy of the adventuresinmachinelearning.com
#   "Python TensorFlow Tutorial" network; the training loop follows that tutorial)
# port: the source's style kept: weights from tf.random_normal(stddev=0.03), biases from
#   tf.random_normal (stddev 1), the output softmax clipped to [1e-10, 0.9999999] and a cost
#   summing, over the 10 classes, y*log(p) + (1-y)*log(1-p), averaged over the batch;
#   GradientDescentOptimizer(learning_rate=0.5) at its own rate; the average cost since the
#   last print shown as "Epoch: 4 cost = 0.071" (the port counts steps where the source
#   counts epochs); the accuracy compares argmax(y, 1) with argmax(y_, 1).
# labels (from the starter's text): Q5 loses "the mean over the batch of the softmax
#   cross-entropy" (a sum of per-class binary cross-entropies is another cost); Q7 full
#   (gradient descent at 0.5 trains this network: its rate is advice). Q3: unasserted, a
#   judgment call: W2's stddev 0.03 is right at a quarter of the Glorot scale of a 128x10
#   layer, the rubric's lower bound. model: full marks (the tutorial reports ~98%).
"""A port of a widely copied TF1 tutorial network into the contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    # training data placeholders
    # input x - for 28 x 28 pixels
    x = tf.placeholder(tf.float32, [None, 28, 28])
    # now declare the output data placeholder - 10 digits
    y = tf.placeholder(tf.float32, [None, 10])
    return x, y


def initialize_parameters(n_hidden=128):
    # now declare the weights connecting the input to the hidden layer
    W1 = tf.Variable(tf.random_normal([784, n_hidden], stddev=0.03), name='W1')
    b1 = tf.Variable(tf.random_normal([n_hidden]), name='b1')
    # and the weights connecting the hidden layer to the output layer
    W2 = tf.Variable(tf.random_normal([n_hidden, 10], stddev=0.03), name='W2')
    b2 = tf.Variable(tf.random_normal([10]), name='b2')
    return {'W1': W1, 'b1': b1, 'W2': W2, 'b2': b2}


def forward_propagation(X, parameters):
    x = tf.reshape(X, [-1, 784])
    # calculate the output of the hidden layer
    hidden_out = tf.add(tf.matmul(x, parameters['W1']), parameters['b1'])
    hidden_out = tf.nn.relu(hidden_out)
    # now calculate the hidden layer output - in this case, let's use a softmax activated
    # output layer
    logits = tf.add(tf.matmul(hidden_out, parameters['W2']), parameters['b2'])
    y_ = tf.nn.softmax(logits)
    return logits, y_


def compute_cost(Z2, Y):
    y_ = tf.nn.softmax(Z2)
    y_clipped = tf.clip_by_value(y_, 1e-10, 0.9999999)
    cross_entropy = -tf.reduce_mean(tf.reduce_sum(Y * tf.log(y_clipped)
                                                  + (1 - Y) * tf.log(1 - y_clipped), axis=1))
    return cross_entropy


def compute_accuracy(Z2, Y):
    # define an accuracy assessment operation
    correct_prediction = tf.equal(tf.argmax(Y, 1), tf.argmax(tf.nn.softmax(Z2), 1))
    accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))
    return accuracy


def create_train_step(cost, learning_rate=0.001):
    # add an optimiser (plain gradient descent needs a large step)
    optimiser = tf.train.GradientDescentOptimizer(learning_rate=0.5).minimize(cost)
    return optimiser


def initialize_session():
    # finally setup the initialisation operator
    init_op = tf.global_variables_initializer()
    sess = tf.Session()
    # initialise the variables
    sess.run(init_op)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    costs = []
    avg_cost = 0
    for i in range(num_steps):
        batch_x, batch_y = mnist.train.next_batch(batch_size=batch_size)
        _, c = sess.run([train_step, cost], feed_dict={X: batch_x, Y: batch_y})
        costs.append(float(c))
        avg_cost += c / print_every
        if (i + 1) % print_every == 0:
            print("Epoch:", (i + 1), "cost =", "{:.3f}".format(avg_cost))
            avg_cost = 0
    return costs


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    c, acc = sess.run([cost, accuracy], feed_dict={X: images, Y: labels})
    return float(c), float(acc)


IMPROVEMENTS = """The network reaches about 98% but the cost curve flattens. I would use
the softmax cross-entropy on the logits instead of the clipped sum of binary terms, switch
from plain gradient descent to the Adam optimizer, and add dropout or L2 regularization
to reduce overfitting; a convolutional network would do even better."""


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
