# expect: {"Q3": 7.1429, "model": "any"}
# feedback: {"Q3": "Glorot", "Q7": "advice"}
# source: DY112/MNIST_Linear_Classifier, main.py
# port: the source's style kept: weights and biases from tf.random_normal (stddev 1), a
#   global_step variable passed to minimize, softmax_cross_entropy_with_logits_v2 averaged
#   over the batch, AdamOptimizer(0.01) at its own fixed rate (the learning_rate argument is
#   not used), one sess.run([optimizer, cost]) per batch and the average cost printed as
#   "Epoch: 0004 cost= 0.071234567".
# labels (from the starter's text): Q7 full marks: the starter lets students choose the
#   optimizer and its rate, so the fixed 0.01 is advice, not a lost point. Q3 loses "a
#   scale that suits the layer size" (stddev 1). model: unasserted, a judgment call (stddev-1
#   weights: whether 1,500 steps reach the threshold depends on the seed, not on the text).
"""A port of a two-layer MNIST classifier with Adam at a fixed rate into the contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    x = tf.placeholder(tf.float32, [None, 28, 28])
    y_ = tf.placeholder(tf.float32, [None, 10])
    return x, y_


def initialize_parameters(n_hidden=128):
    W1 = tf.Variable(tf.random_normal([784, n_hidden]))
    b1 = tf.Variable(tf.random_normal([n_hidden]))
    W2 = tf.Variable(tf.random_normal([n_hidden, 10]))
    b2 = tf.Variable(tf.random_normal([10]))
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


def forward_propagation(X, parameters):
    x = tf.reshape(X, [-1, 784])
    h1 = tf.nn.relu(tf.matmul(x, parameters["W1"]) + parameters["b1"])
    y = tf.matmul(h1, parameters["W2"]) + parameters["b2"]
    return y, tf.nn.softmax(y)


def compute_cost(Z2, Y):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=Z2))


def compute_accuracy(Z2, Y):
    correct = tf.equal(tf.argmax(Z2, 1), tf.argmax(Y, 1))
    return tf.reduce_mean(tf.cast(correct, tf.float32))


def create_train_step(cost, learning_rate=0.001):
    global_step = tf.Variable(0, trainable=False, name='global_step')
    optimizer = tf.train.AdamOptimizer(0.01).minimize(cost, global_step=global_step)
    return optimizer


def initialize_session():
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    costs = []
    avc = 0.
    for it in range(num_steps):
        batch_xs, batch_ys = mnist.train.next_batch(batch_size)
        _, c = sess.run([train_step, cost], feed_dict={X: batch_xs, Y: batch_ys})
        costs.append(float(c))
        avc += c / print_every
        if (it + 1) % print_every == 0:
            print("Epoch:", '%04d' % (it + 1), "cost=", "{:.9f}".format(avc))
            avc = 0.
    return costs


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    c, a = sess.run([cost, accuracy], feed_dict={X: images, Y: labels})
    return float(c), float(a)


IMPROVEMENTS = """The cost printed per epoch falls quickly and then stalls. A lower
learning rate or a learning rate decay would help Adam settle, Xavier initialization
instead of unit-variance weights would start the training in a better place, and
dropout would reduce the gap between the train and the test accuracy."""


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
