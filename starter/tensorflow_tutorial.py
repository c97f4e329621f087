"""Introduction to TensorFlow: a 2-layer network for MNIST.

You will build, in TensorFlow's graph mode, a network that reads a 28x28
grayscale image of a hand-written digit and says which digit (0 to 9) it is:

    LINEAR(784 -> n_hidden) -> RELU -> LINEAR(n_hidden -> 10) -> SOFTMAX

In graph mode you first describe the computation (placeholders, variables and
operations: nothing is computed yet), then run parts of it in a session,
feeding real numbers into the placeholders.

Fill in each function from Q2 to Q10: replace the `raise NotImplementedError`
line under `# YOUR CODE HERE` with your code. Keep the function names and
arguments as they are: the grader calls exactly these. Answer Q11 in the
string IMPROVEMENTS at the end.

Run the whole tutorial with `python tensorflow_tutorial.py` (see --help for
the options, e.g. `--steps 2000` for a quick try). Importing this file only
defines the functions: nothing is trained.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TensorFlow's C++ start-up logs
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # same results on every CPU

import numpy as np
import tensorflow.compat.v1 as tf

tf.logging.set_verbosity(tf.logging.ERROR)  # no deprecation notices about the 1.x API
tf.disable_v2_behavior()

from mnist_loader import load_mnist  # the file mnist_loader.py beside this one


# Q1 (provided: read it, don't edit it) ---------------------------------------


def load_dataset(path=None):
    """Load MNIST and return `mnist`, with two splits: `mnist.train` and `mnist.test`.

    Each split has:
      .images        float32 array (m, 28, 28), pixel values scaled to [0, 1]
      .labels        float32 array (m, 10), one-hot: row i is all zeros except
                     a 1 in the column of the digit of image i
      .num_examples  m
      .next_batch(batch_size)
                     the next mini-batch (images, labels), shapes
                     (batch_size, 28, 28) and (batch_size, 10). The examples
                     come in a random order that is reshuffled at every epoch
                     (one pass through the data).

    Where the data comes from: `path` (or the MNIST_PATH environment variable)
    if given, an .npz file or a folder of the four MNIST IDX files; else the
    Keras cache ~/.keras/datasets/mnist.npz; else a download; else, offline,
    a 5,000-image subset of MNIST. One line says which source was used.
    """
    return load_mnist(path)


# Q2 --------------------------------------------------------------------------


def create_placeholders():
    """Create the placeholders X (images) and Y (labels) and return them as (X, Y).

    A placeholder is an input of the graph: it has a dtype and a shape but no
    value until you feed one in `sess.run(..., feed_dict={X: ..., Y: ...})`.

    - X holds a batch of images: float32, shape [None, 28, 28].
    - Y holds their labels, one-hot: float32, shape [None, 10].

    `None` as the first dimension lets the same graph take a batch of any size
    (100 images while training, the whole test set when evaluating).

    Hint: tf.placeholder(dtype, shape=..., name=...).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q2 create_placeholders: write your code here")


# Q3 --------------------------------------------------------------------------


def initialize_parameters(n_hidden=128):
    """Create the model's trainable parameters and return them in a dict.

    - "W1": shape [784, n_hidden]  (784 = 28 * 28 input pixels)
    - "b1": shape [n_hidden]
    - "W2": shape [n_hidden, 10]   (10 digits)
    - "b2": shape [10]

    Hints:
    - Make each one a tf.Variable, so that the optimizer can change it.
    - Initialize the weights randomly, with a scale that suits the layer size:
      the Glorot (Xavier) uniform initializer, tf.glorot_uniform_initializer(),
      is a good choice (call it with a shape to get a tensor of initial values).
    - Pitfall: weights initialized to zeros make every hidden unit compute the
      same thing and receive the same gradient, so they never become
      different: the network cannot learn. Biases, however, can start at zero
      (tf.zeros).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q3 initialize_parameters: write your code here")


# Q4 --------------------------------------------------------------------------


def forward_propagation(X, parameters):
    """Compute the network's output for the images X; return (Z2, A2).

    LINEAR -> RELU -> LINEAR -> SOFTMAX:
        Z1 = X_flat W1 + b1     shape [None, n_hidden]
        A1 = relu(Z1)
        Z2 = A1 W2 + b2         shape [None, 10], the logits (scores)
        A2 = softmax(Z2)        shape [None, 10], probabilities summing to 1 per row

    Hints:
    - X has shape [None, 28, 28], but a fully connected layer multiplies a
      matrix: first reshape X to [-1, 784] (tf.reshape), one row per image.
    - tf.matmul for the matrix products, tf.nn.relu and tf.nn.softmax for the
      activations. The bias is added to every row (broadcasting).
    - Return the logits Z2 as well as A2: the cost and the accuracy use Z2.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q4 forward_propagation: write your code here")


# Q5 --------------------------------------------------------------------------


def compute_cost(Z2, Y):
    """Return the cost: a scalar tensor, the mean over the batch of the softmax
    cross-entropy between the logits Z2 and the one-hot labels Y.

    Hints:
    - With 10 classes, use tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y,
      logits=Z2): it returns one value per example.
    - Pass the logits Z2, not the probabilities A2: the function applies the
      softmax itself (in a numerically stable way). Giving it A2 would apply
      the softmax twice.
    - Average with tf.reduce_mean, don't sum: the mean keeps the same scale
      whatever the batch size, so the learning rate means the same thing.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q5 compute_cost: write your code here")


# Q6 --------------------------------------------------------------------------


def compute_accuracy(Z2, Y):
    """Return the accuracy: a scalar float32 tensor in [0, 1], the fraction of
    images whose predicted digit is the true digit.

    Hints:
    - The predicted digit of a row is the column of its largest score:
      tf.argmax(Z2, axis=1). The true digit is tf.argmax(Y, axis=1).
      Axis 1 runs across the 10 classes; axis 0 would run across the batch.
    - tf.equal gives booleans: cast them to float32 (tf.cast) before taking
      the mean (tf.reduce_mean), which then is the fraction of correct rows.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q6 compute_accuracy: write your code here")


# Q7 --------------------------------------------------------------------------


def create_train_step(cost, learning_rate=0.001):
    """Return the training step: an operation that, each time it is run in a
    session, performs one optimization step that lowers `cost`.

    Hints:
    - Pick an optimizer, e.g. tf.train.AdamOptimizer(learning_rate=...), and
      call its .minimize(cost): it computes the gradients of the cost with
      respect to the trainable variables and applies them.
    - Running the returned operation does the update; it returns no value.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q7 create_train_step: write your code here")


# Q8 --------------------------------------------------------------------------


def initialize_session():
    """Create a tf.Session, initialize every variable of the graph in it, and
    return the session.

    Hints:
    - Variables have no value until their initializer runs:
      tf.global_variables_initializer() is one operation that initializes
      them all; run it with sess.run(...).
    - Call this after building the whole graph (the optimizer creates
      variables of its own, e.g. Adam's moment estimates), so that they are
      all initialized.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q8 initialize_session: write your code here")


# Q9 --------------------------------------------------------------------------


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    """The optimization loop: run `num_steps` training steps and return the list
    of the `num_steps` costs, one Python float per step.

    At every step:
    - get a new mini-batch: mnist.train.next_batch(batch_size) returns
      (images, labels). Call it inside the loop, so that each step sees
      different examples.
    - build the feed dictionary {X: images, Y: labels};
    - run the training step and the cost in the same call,
      sess.run([train_step, cost], feed_dict=...): one pass over the batch
      both updates the parameters and gives the cost. (Two separate calls
      would compute everything twice.)
    - store the cost as a Python float (float(...)) in the list;
    - every `print_every` steps, print the iteration number and the cost,
      e.g. "Iteration 1000: cost = 0.1234".
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q9 train: write your code here")


# Q10 -------------------------------------------------------------------------


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    """Compute the cost and the accuracy on the given images and labels (e.g.
    the whole training set, or the whole test set); return them as a pair of
    Python floats (cost_value, accuracy_value).

    Hints:
    - No training here: run only `cost` and `accuracy`, feeding the images and
      labels to X and Y. Both can be fetched in one sess.run.
    - sess.run returns numpy values: convert them with float(...).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Q10 evaluate: write your code here")


# Q11 -------------------------------------------------------------------------

# Look at the printed costs and the final train and test accuracies. What
# improvements could be made, to the model, the training or the code? Name at
# least two concrete changes and say why each would help, in a few sentences
# (at least 25 words), in this string. Search for ideas online and try them at
# home.
IMPROVEMENTS = ""


# The whole tutorial (provided) -------------------------------------------------


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


if __name__ == "__main__":
    main()
