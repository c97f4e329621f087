# expect: {"Q9": "any"}
# feedback: {"Q9": "batch"}
# source: tensorflow/tensorflow, tensorflow/examples/tutorials/mnist/mnist_with_summaries.py
# port: the official example's style kept: weight_variable (truncated normal, stddev 0.1)
#   and bias_variable (constant 0.1) helpers, an nn_layer helper with name scopes and an
#   `act` argument (tf.identity for the logits), the v1 softmax cross-entropy averaged under
#   a 'total' name scope, AdamOptimizer(learning_rate), the accuracy under its name scopes,
#   and its loop: every print_every-th step does not train but measures the test set and
#   prints '... at step %s: %s' (the source prints the test accuracy; train() has no
#   accuracy tensor, so the port prints the test cost). Left out: dropout (the contract's
#   forward_propagation has no keep_prob) and the TensorBoard summaries writer.
# labels (from the starter's text): Q9: unasserted as a whole: the loop skips training and
#   next_batch on the measuring steps and returns the test cost for them, which loses
#   "At every step: get a new mini-batch ..." and "one Python float per step" (the cost of
#   the step's batch); whether the printed test cost is "the cost" is a judgment call.
#   Everything else full marks.
"""A port of TensorFlow's mnist_with_summaries example into the contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    # Input placeholders
    with tf.name_scope('input'):
        x = tf.placeholder(tf.float32, [None, 28, 28], name='x-input')
        y_ = tf.placeholder(tf.float32, [None, 10], name='y-input')
    return x, y_


def weight_variable(shape):
    """Create a weight variable with appropriate initialization."""
    initial = tf.truncated_normal(shape, stddev=0.1)
    return tf.Variable(initial)


def bias_variable(shape):
    """Create a bias variable with appropriate initialization."""
    initial = tf.constant(0.1, shape=shape)
    return tf.Variable(initial)


def initialize_parameters(n_hidden=128):
    with tf.name_scope('layer1'):
        W1, b1 = weight_variable([784, n_hidden]), bias_variable([n_hidden])
    with tf.name_scope('layer2'):
        W2, b2 = weight_variable([n_hidden, 10]), bias_variable([10])
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


def nn_layer(input_tensor, weights, biases, layer_name, act=tf.nn.relu):
    """Reusable code for making a simple neural net layer."""
    with tf.name_scope(layer_name):
        with tf.name_scope('Wx_plus_b'):
            preactivate = tf.matmul(input_tensor, weights) + biases
        activations = act(preactivate, name='activation')
        return activations


def forward_propagation(X, parameters):
    x = tf.reshape(X, [-1, 784])
    hidden1 = nn_layer(x, parameters["W1"], parameters["b1"], 'layer1')
    # Do not apply softmax activation yet, see below.
    y = nn_layer(hidden1, parameters["W2"], parameters["b2"], 'layer2', act=tf.identity)
    return y, tf.nn.softmax(y)


def compute_cost(Z2, Y):
    with tf.name_scope('cross_entropy'):
        diff = tf.nn.softmax_cross_entropy_with_logits(logits=Z2, labels=Y)
        with tf.name_scope('total'):
            cross_entropy = tf.reduce_mean(diff)
    return cross_entropy


def compute_accuracy(Z2, Y):
    with tf.name_scope('accuracy'):
        with tf.name_scope('correct_prediction'):
            correct_prediction = tf.equal(tf.argmax(Z2, 1), tf.argmax(Y, 1))
        with tf.name_scope('accuracy'):
            accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))
    return accuracy


def create_train_step(cost, learning_rate=0.001):
    with tf.name_scope('train'):
        train_step = tf.train.AdamOptimizer(learning_rate).minimize(cost)
    return train_step


def initialize_session():
    sess = tf.InteractiveSession()
    tf.global_variables_initializer().run()
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    costs = []

    def feed_dict(train):
        """Make a TensorFlow feed_dict: maps data onto Tensor placeholders."""
        if train:
            xs, ys = mnist.train.next_batch(batch_size)
        else:
            xs, ys = mnist.test.images, mnist.test.labels
        return {X: xs, Y: ys}

    for i in range(num_steps):
        if i % print_every == 0:  # Record test-set cost
            c = sess.run(cost, feed_dict=feed_dict(False))
            print('Cost at step %s: %s' % (i, c))
        else:  # Record train set cost, and train
            _, c = sess.run([train_step, cost], feed_dict=feed_dict(True))
        costs.append(float(c))
    return costs


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    c, acc = sess.run([cost, accuracy], feed_dict={X: images, Y: labels})
    return float(c), float(acc)


IMPROVEMENTS = """Turn dropout back on (keep probability 0.9) for regularization, decay
the learning rate over the run, and replace the hidden layer with two convolutional
layers and max pooling; TensorBoard makes it easy to compare those runs."""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    Z2, A2 = forward_propagation(X, initialize_parameters())
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    train_step = create_train_step(cost)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist, num_steps=1000, print_every=10)
    print(evaluate(sess, cost, accuracy, X, Y, mnist.test.images, mnist.test.labels))
