# expect: {"Q10": 2.5}
# feedback: {"Q10": "first"}
# source: tensorflow/tensorflow, tensorflow/examples/tutorials/mnist/mnist.py and
#   tensorflow/examples/tutorials/mnist/fully_connected_feed.py
# port: the official example's style kept: name scopes "hidden1" and "softmax_linear" with
#   variables named "weights" and "biases", truncated-normal weights of stddev
#   1/sqrt(fan_in), zero biases, tf.losses.sparse_softmax_cross_entropy on the digit labels,
#   a GradientDescentOptimizer(learning_rate) with a global_step, the accuracy counted with
#   tf.nn.in_top_k and divided by the number of examples (its do_eval's "precision"),
#   progress printed as 'Step %d: loss = %.2f (%.3f sec)', and do_eval's evaluation: whole
#   batches of 100 only, the examples after the last whole batch left out.
# labels (from the starter's text): Q10 loses "Compute the cost and the accuracy on the
#   given images and labels" (the last partial batch is dropped: not the whole set); the
#   other items get full marks (the 0-based 'Step %d' lines and a 2-decimal loss are a
#   progress line).
"""A port of TensorFlow's own fully_connected_feed MNIST example into the contract."""

import math
import time

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist

# The MNIST dataset has 10 classes, representing the digits 0 through 9.
NUM_CLASSES = 10
# The MNIST images are always 28x28 pixels.
IMAGE_SIZE = 28
IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE
BATCH_SIZE = 100


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    images_placeholder = tf.placeholder(tf.float32, shape=(None, IMAGE_SIZE, IMAGE_SIZE))
    labels_placeholder = tf.placeholder(tf.float32, shape=(None, NUM_CLASSES))
    return images_placeholder, labels_placeholder


def initialize_parameters(n_hidden=128):
    # Hidden 1
    with tf.name_scope('hidden1'):
        weights = tf.Variable(
            tf.truncated_normal([IMAGE_PIXELS, n_hidden],
                                stddev=1.0 / math.sqrt(float(IMAGE_PIXELS))),
            name='weights')
        biases = tf.Variable(tf.zeros([n_hidden]), name='biases')
    # Linear
    with tf.name_scope('softmax_linear'):
        weights2 = tf.Variable(
            tf.truncated_normal([n_hidden, NUM_CLASSES],
                                stddev=1.0 / math.sqrt(float(n_hidden))),
            name='weights')
        biases2 = tf.Variable(tf.zeros([NUM_CLASSES]), name='biases')
    return {"W1": weights, "b1": biases, "W2": weights2, "b2": biases2}


def forward_propagation(X, parameters):
    images = tf.reshape(X, [-1, IMAGE_PIXELS])
    hidden1 = tf.nn.relu(tf.matmul(images, parameters["W1"]) + parameters["b1"])
    logits = tf.matmul(hidden1, parameters["W2"]) + parameters["b2"]
    return logits, tf.nn.softmax(logits)


def compute_cost(Z2, Y):
    labels = tf.to_int64(tf.argmax(Y, 1))
    return tf.losses.sparse_softmax_cross_entropy(labels=labels, logits=Z2)


def compute_accuracy(Z2, Y):
    # For a classifier model, we can use the in_top_k Op.
    correct = tf.nn.in_top_k(Z2, tf.argmax(Y, 1), 1)
    true_count = tf.reduce_sum(tf.cast(correct, tf.int32))
    return tf.cast(true_count, tf.float32) / tf.cast(tf.shape(Z2)[0], tf.float32)


def create_train_step(cost, learning_rate=0.001):
    tf.summary.scalar('loss', cost)
    # Create the gradient descent optimizer with the given learning rate.
    optimizer = tf.train.GradientDescentOptimizer(learning_rate)
    # Create a variable to track the global step.
    global_step = tf.Variable(0, name='global_step', trainable=False)
    train_op = optimizer.minimize(cost, global_step=global_step)
    return train_op


def initialize_session():
    init = tf.global_variables_initializer()
    sess = tf.Session()
    sess.run(init)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    losses = []
    for step in range(num_steps):
        start_time = time.time()
        images_feed, labels_feed = mnist.train.next_batch(batch_size)
        feed_dict = {X: images_feed, Y: labels_feed}
        _, loss_value = sess.run([train_step, cost], feed_dict=feed_dict)
        losses.append(float(loss_value))
        duration = time.time() - start_time
        if step % print_every == 0:
            # Print status to stdout.
            print('Step %d: loss = %.2f (%.3f sec)' % (step, loss_value, duration))
    return losses


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    # And run one epoch of eval.
    true_count = 0.0
    total_loss = 0.0
    steps_per_epoch = len(images) // BATCH_SIZE
    num_examples = steps_per_epoch * BATCH_SIZE
    for step in range(steps_per_epoch):
        feed_dict = {X: images[step * BATCH_SIZE:(step + 1) * BATCH_SIZE],
                     Y: labels[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]}
        loss_value, precision = sess.run([cost, accuracy], feed_dict=feed_dict)
        true_count += precision * BATCH_SIZE
        total_loss += loss_value * BATCH_SIZE
    precision = true_count / num_examples
    print('  Num examples: %d  Num correct: %d  Precision @ 1: %0.04f' %
          (num_examples, true_count, precision))
    return float(total_loss / num_examples), float(precision)


IMPROVEMENTS = """Two fully connected layers with plain gradient descent are a baseline.
A learning rate that decays over the steps, momentum or Adam instead of plain SGD, a
second hidden layer and weight decay (L2 regularization) would all improve the test
precision; a convolutional network would improve it most."""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    Z2, A2 = forward_propagation(X, initialize_parameters())
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    train_step = create_train_step(cost, 0.01)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist, num_steps=2000, print_every=100)
    print('Test Data Eval:', evaluate(sess, cost, accuracy, X, Y, mnist.test.images,
                                      mnist.test.labels))
