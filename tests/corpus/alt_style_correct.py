# expect: {}
"""A complete submission written in another style than the reference: string
dtypes, a hand-rolled Glorot initializer, bias_add, the v1 cross-entropy,
to_float, a global step, eval() and 1-based iteration numbers. Full marks."""

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    X = tf.placeholder("float32", [None, 28, 28])
    Y = tf.placeholder("float32", [None, 10])
    return X, Y


def _glorot(fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return tf.Variable(tf.random_uniform([fan_in, fan_out], minval=-limit, maxval=limit))


def initialize_parameters(n_hidden=128):
    parameters = {}
    parameters["W1"] = _glorot(784, n_hidden)
    parameters["b1"] = tf.Variable(np.zeros(n_hidden, dtype=np.float32))
    parameters["W2"] = _glorot(n_hidden, 10)
    parameters["b2"] = tf.Variable(np.zeros(10, dtype=np.float32))
    return parameters


def forward_propagation(X, parameters):
    flat = tf.reshape(X, (tf.shape(X)[0], 28 * 28))
    hidden = tf.nn.relu(tf.nn.bias_add(tf.matmul(flat, parameters["W1"]), parameters["b1"]))
    logits = tf.nn.bias_add(tf.matmul(hidden, parameters["W2"]), parameters["b2"])
    return logits, tf.nn.softmax(logits, axis=-1)


def compute_cost(Z2, Y):
    losses = tf.nn.softmax_cross_entropy_with_logits(labels=Y, logits=Z2)
    return tf.reduce_mean(losses)


def compute_accuracy(Z2, Y):
    predicted = tf.argmax(tf.nn.softmax(Z2), 1)
    return tf.reduce_mean(tf.to_float(tf.equal(predicted, tf.argmax(Y, 1))))


def create_train_step(cost, learning_rate=0.001):
    global_step = tf.train.get_or_create_global_step()
    optimizer = tf.train.AdamOptimizer(learning_rate)
    return optimizer.minimize(cost, global_step=global_step)


def initialize_session():
    init = tf.global_variables_initializer()
    sess = tf.Session()
    sess.run(init)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    history = []
    for step in range(1, num_steps + 1):
        xs, ys = mnist.train.next_batch(batch_size)
        _, c = sess.run((train_step, cost), {X: xs, Y: ys})
        history.append(c.item())
        if step % print_every == 0:
            print("Iteration", step, "cost", round(c.item(), 4))
    return history


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    feed = {X: images, Y: labels}
    return float(cost.eval(feed, session=sess)), float(accuracy.eval(feed, session=sess))


IMPROVEMENTS = """
- Stop training when the accuracy on a held-out validation split stops rising.
- Add dropout or an L2 penalty on the weights to reduce overfitting.
- Try a convolutional network, which uses the 2-D structure of the images.
- Decay the learning rate, and tune the hidden size and the batch size.
"""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    parameters = initialize_parameters()
    Z2, A2 = forward_propagation(X, parameters)
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    train_step = create_train_step(cost)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist)
    print(evaluate(sess, cost, accuracy, X, Y, mnist.test.images, mnist.test.labels))
