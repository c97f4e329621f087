# expect: {"Q3": 7.1429, "Q4": 3.3333, "Q5": 2, "Q9": 12.5, "Q11": 0, "model": 0}
# feedback: {"Q3": "equals 1", "Q4": "ReLU", "Q5": "sum", "Q9": "iteration", "Q11": "words"}
# source: JenifferWuUCLA/pulmonary-nodules-MaskRCNN,
#   Resources/TensorFlow-Deep-Learning-Practice/TensorFlow-Sourcecode/12/12-3.py
# port: the source's quirks kept: every weight and bias initialized with tf.ones, no
#   activation between the two layers, the cross-entropy written by hand as
#   -reduce_sum(y * log(softmax)) (summed over the batch), GradientDescentOptimizer(0.01)
#   at its own rate, tf.initialize_all_variables(), a bare number printed every
#   print_every steps (the source prints the test accuracy alone; train() has no accuracy
#   tensor, so the port prints the cost alone), and a one-line answer to Q11.
# labels (from the starter's text): Q3 loses "a scale that suits the layer size" (identical
#   weights cannot break symmetry); Q4 loses "LINEAR -> RELU -> LINEAR"; Q5 loses "the mean
#   over the batch" (the sum); Q9 loses "print the iteration number and the cost" (no
#   iteration); Q11 loses "at least 25 words"; model: 0 (identical weights, a summed cost:
#   the network cannot learn).
"""A port of a book's two-layer MNIST example (ones init, no ReLU) into the contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    x_data = tf.placeholder("float32", [None, 28, 28])
    y_data = tf.placeholder("float32", [None, 10])
    return x_data, y_data


def initialize_parameters(n_hidden=128):
    weight1 = tf.Variable(tf.ones([784, n_hidden]))
    bias1 = tf.Variable(tf.ones([n_hidden]))
    weight2 = tf.Variable(tf.ones([n_hidden, 10]))
    bias2 = tf.Variable(tf.ones([10]))
    return {"W1": weight1, "b1": bias1, "W2": weight2, "b2": bias2}


def forward_propagation(X, parameters):
    x_data = tf.reshape(X, [-1, 784])
    y1_model1 = tf.matmul(x_data, parameters["W1"]) + parameters["b1"]
    logits = tf.matmul(y1_model1, parameters["W2"]) + parameters["b2"]
    y_model = tf.nn.softmax(logits)
    return logits, y_model


def compute_cost(Z2, Y):
    y_model = tf.nn.softmax(Z2)
    loss = -tf.reduce_sum(Y * tf.log(y_model))
    return loss


def compute_accuracy(Z2, Y):
    correct_prediction = tf.equal(tf.argmax(tf.nn.softmax(Z2), 1), tf.argmax(Y, 1))
    accuracy = tf.reduce_mean(tf.cast(correct_prediction, "float"))
    return accuracy


def create_train_step(cost, learning_rate=0.001):
    train_step = tf.train.GradientDescentOptimizer(0.01).minimize(cost)
    return train_step


def initialize_session():
    init = tf.initialize_all_variables()
    sess = tf.Session()
    sess.run(init)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    losses = []
    for _ in range(num_steps):
        batch_xs, batch_ys = mnist.train.next_batch(batch_size)
        _t, c = sess.run([train_step, cost], feed_dict={X: batch_xs, Y: batch_ys})
        losses.append(float(c))
        if _ % print_every == 0:
            print(c)
    return losses


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    return float(sess.run(cost, feed_dict={X: images, Y: labels})), \
        float(sess.run(accuracy, feed_dict={X: images, Y: labels}))


IMPROVEMENTS = "Train for more epochs."


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
