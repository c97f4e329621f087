# expect: {}
# The reference as students often hand it in: main() called at the end of the file without
# an `if __name__ == "__main__":` guard, so importing the file would train. The grader skips
# the call (and says where it belongs) and grades the functions: full marks.
"""Introduction to TensorFlow: a 2-layer network for MNIST (reference solution).

LINEAR(784 -> n_hidden) -> RELU -> LINEAR(n_hidden -> 10) -> SOFTMAX, built
in TensorFlow's graph mode and trained with Adam on mini-batches.

Run the whole tutorial with `python tensorflow_tutorial.py` (see --help).
Importing this file defines the functions and trains nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TensorFlow's C++ start-up logs
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # same results on every CPU

import numpy as np
import tensorflow.compat.v1 as tf

tf.logging.set_verbosity(tf.logging.ERROR)  # no deprecation notices about the 1.x API
tf.disable_v2_behavior()

try:
    from mnist_loader import load_mnist
except ImportError:  # run from the repository: the loader lives in starter/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "starter"))
    from mnist_loader import load_mnist


# Q1 (provided) ---------------------------------------------------------------


def load_dataset(path=None):
    """Load MNIST: `mnist.train` and `mnist.test`, each with `.images` float32
    (m, 28, 28) in [0, 1], `.labels` float32 one-hot (m, 10), `.num_examples`
    and `.next_batch(batch_size)`. `path` (or the MNIST_PATH environment
    variable) may name an .npz file or a folder of IDX files.
    """
    return load_mnist(path)


# Q2 --------------------------------------------------------------------------


def create_placeholders():
    """Return (X, Y): float32 placeholders for a batch of images [None, 28, 28]
    and of one-hot labels [None, 10]."""
    X = tf.placeholder(tf.float32, shape=[None, 28, 28], name="X")
    Y = tf.placeholder(tf.float32, shape=[None, 10], name="Y")
    return X, Y


# Q3 --------------------------------------------------------------------------


def initialize_parameters(n_hidden=128):
    """Return the dict of trainable variables W1 [784, n_hidden], b1 [n_hidden],
    W2 [n_hidden, 10], b2 [10]: Glorot-uniform weights, zero biases."""
    glorot = tf.glorot_uniform_initializer()
    return {
        "W1": tf.Variable(glorot([784, n_hidden]), name="W1"),
        "b1": tf.Variable(tf.zeros([n_hidden]), name="b1"),
        "W2": tf.Variable(glorot([n_hidden, 10]), name="W2"),
        "b2": tf.Variable(tf.zeros([10]), name="b2"),
    }


# Q4 --------------------------------------------------------------------------


def forward_propagation(X, parameters):
    """Return (Z2, A2): the logits and the softmax probabilities, both [None, 10]."""
    X_flat = tf.reshape(X, [-1, 784])
    Z1 = tf.matmul(X_flat, parameters["W1"]) + parameters["b1"]
    A1 = tf.nn.relu(Z1)
    Z2 = tf.matmul(A1, parameters["W2"]) + parameters["b2"]
    A2 = tf.nn.softmax(Z2)
    return Z2, A2


# Q5 --------------------------------------------------------------------------


def compute_cost(Z2, Y):
    """Return the mean over the batch of the softmax cross-entropy of the logits Z2."""
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=Z2))


# Q6 --------------------------------------------------------------------------


def compute_accuracy(Z2, Y):
    """Return the fraction of rows whose predicted digit (argmax of Z2) is the label's."""
    correct = tf.equal(tf.argmax(Z2, axis=1), tf.argmax(Y, axis=1))
    return tf.reduce_mean(tf.cast(correct, tf.float32))


# Q7 --------------------------------------------------------------------------


def create_train_step(cost, learning_rate=0.001):
    """Return the operation that performs one Adam step lowering `cost`."""
    return tf.train.AdamOptimizer(learning_rate=learning_rate).minimize(cost)


# Q8 --------------------------------------------------------------------------


def initialize_session():
    """Return a new session in which every global variable is initialized."""
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return sess


# Q9 --------------------------------------------------------------------------


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    """Run `num_steps` optimization steps, each on a fresh mini-batch; return the
    list of the costs (Python floats), printing one every `print_every` steps."""
    costs = []
    for i in range(num_steps):
        batch_images, batch_labels = mnist.train.next_batch(batch_size)
        _, cost_value = sess.run([train_step, cost], feed_dict={X: batch_images, Y: batch_labels})
        costs.append(float(cost_value))
        if (print_every and i % print_every == 0) or i == num_steps - 1:
            print(f"Iteration {i}: cost = {cost_value:.4f}", flush=True)
    return costs


# Q10 -------------------------------------------------------------------------


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    """Return (cost, accuracy) on the given images and labels, as Python floats."""
    cost_value, accuracy_value = sess.run([cost, accuracy], feed_dict={X: images, Y: labels})
    return float(cost_value), float(accuracy_value)


# Q11 -------------------------------------------------------------------------

IMPROVEMENTS = """\
The training cost keeps falling towards zero while the test cost stops \
improving and then creeps up: after a few epochs the network mostly memorizes \
the training set, so the main improvements target generalization. First, hold \
out a validation set and use it to choose the number of steps (early stopping), \
the learning rate and the hidden size, instead of looking at the test set. \
Then regularize: L2 weight decay or dropout on the hidden layer, and data \
augmentation (small shifts and rotations of the digits). A learning-rate \
schedule that decays over training, and larger or more layers once \
regularized, help further. The biggest step is to exploit the image structure \
with a convolutional network (convolution, pooling, then the dense layers), \
which reaches about 99% on MNIST where this fully connected net stays near \
98%. Finally, the loop should report progress per epoch, average the cost \
over many batches rather than printing one noisy batch value, and save \
checkpoints and TensorBoard summaries to compare runs."""


# The whole tutorial ------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a 2-layer network on MNIST with TensorFlow.")
    parser.add_argument("--steps", type=int, default=20000, help="optimization steps (default 20000)")
    parser.add_argument("--batch-size", type=int, default=100, help="mini-batch size (default 100)")
    parser.add_argument("--learning-rate", type=float, default=0.001,
                        help="learning rate of the optimizer (default 0.001)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="an MNIST .npz file or a folder of IDX files (default: $MNIST_PATH, "
                             "the Keras cache, a download, or the offline subset)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--print-every", type=int, default=1000, help="print the cost every N steps")
    args = parser.parse_args(argv)

    np.random.seed(args.seed)
    tf.set_random_seed(args.seed)

    # Q1: load_dataset(args.data) with the mini-batch order drawn from --seed.
    mnist = load_mnist(args.data, seed=args.seed)
    X, Y = create_placeholders()                                     # Q2
    parameters = initialize_parameters(args.hidden)                  # Q3
    Z2, A2 = forward_propagation(X, parameters)                      # Q4
    cost = compute_cost(Z2, Y)                                       # Q5
    accuracy = compute_accuracy(Z2, Y)                               # Q6
    train_step = create_train_step(cost, args.learning_rate)         # Q7
    sess = initialize_session()                                      # Q8

    start = time.time()
    train(sess, train_step, cost, X, Y, mnist, num_steps=args.steps,  # Q9
          batch_size=args.batch_size, print_every=args.print_every)
    print(f"Trained {args.steps} steps in {time.time() - start:.1f} s")

    for name, split in (("Train", mnist.train), ("Test", mnist.test)):  # Q10
        split_cost, split_accuracy = evaluate(sess, cost, accuracy, X, Y, split.images, split.labels)
        print(f"{name} cost = {split_cost:.4f}, {name.lower()} accuracy = {split_accuracy:.4f}")
    sess.close()


main()
