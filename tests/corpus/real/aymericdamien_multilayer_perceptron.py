# expect: {"Q3": 7.1429, "model": "any"}
# feedback: {"Q3": "Glorot"}
# source: aymericdamien/TensorFlow-Examples, examples/3_NeuralNetworks/multilayer_perceptron.py
# port: the contract's functions written in the source's style: weights AND biases from
#   tf.random_normal (stddev 1), "float" placeholders, tf.add + relu layers (one hidden layer
#   here, the source has two), tf.nn.softmax_cross_entropy_with_logits (v1) averaged with
#   reduce_mean, AdamOptimizer(learning_rate=...), the cost averaged over the steps between
#   two prints and printed as "Epoch: 0004 cost= 0.071234567", then "Optimization Finished!";
#   the accuracy on the argmax of the softmax, cast to "float".
# labels (from the starter's text): Q3 loses "weights ... with a scale that suits the layer
#   size" (stddev 1 is ~20x the Glorot scale of a 784-input layer). model: unasserted, a
#   judgment call: stddev-1 weights start far from a good solution and whether 1,500 steps
#   reach the threshold is a matter of the data and the seed, not of the text.
"""A port of a classic TF1 multilayer perceptron for MNIST into this assignment's contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist

# Network Parameters
n_input = 784  # MNIST data input (img shape: 28*28)
n_classes = 10  # MNIST total classes (0-9 digits)


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    # tf Graph input
    x = tf.placeholder("float", [None, 28, 28])
    y = tf.placeholder("float", [None, n_classes])
    return x, y


def initialize_parameters(n_hidden=128):
    # Store layers weight & bias
    weights = {
        'h1': tf.Variable(tf.random_normal([n_input, n_hidden])),
        'out': tf.Variable(tf.random_normal([n_hidden, n_classes]))
    }
    biases = {
        'b1': tf.Variable(tf.random_normal([n_hidden])),
        'out': tf.Variable(tf.random_normal([n_classes]))
    }
    return {"W1": weights['h1'], "b1": biases['b1'], "W2": weights['out'], "b2": biases['out']}


def forward_propagation(X, parameters):
    x = tf.reshape(X, [-1, n_input])
    # Hidden layer with RELU activation
    layer_1 = tf.add(tf.matmul(x, parameters['W1']), parameters['b1'])
    layer_1 = tf.nn.relu(layer_1)
    # Output layer with linear activation
    logits = tf.matmul(layer_1, parameters['W2']) + parameters['b2']
    pred = tf.nn.softmax(logits)
    return logits, pred


def compute_cost(Z2, Y):
    # Define loss
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=Z2, labels=Y))


def compute_accuracy(Z2, Y):
    pred = tf.nn.softmax(Z2)
    correct_prediction = tf.equal(tf.argmax(pred, 1), tf.argmax(Y, 1))
    # Calculate accuracy
    return tf.reduce_mean(tf.cast(correct_prediction, "float"))


def create_train_step(cost, learning_rate=0.001):
    return tf.train.AdamOptimizer(learning_rate=learning_rate).minimize(cost)


def initialize_session():
    # Initializing the variables
    init = tf.global_variables_initializer()
    sess = tf.Session()
    sess.run(init)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    costs = []
    avg_cost = 0.
    # Training cycle
    for step in range(num_steps):
        batch_x, batch_y = mnist.train.next_batch(batch_size)
        # Run optimization op (backprop) and cost op (to get loss value)
        _, c = sess.run([train_step, cost], feed_dict={X: batch_x, Y: batch_y})
        costs.append(float(c))
        # Compute average loss
        avg_cost += c / print_every
        # Display logs per display step
        if (step + 1) % print_every == 0:
            print("Epoch:", '%04d' % (step + 1), "cost=", "{:.9f}".format(avg_cost))
            avg_cost = 0.
    print("Optimization Finished!")
    return costs


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    c, acc = sess.run([cost, accuracy], feed_dict={X: images, Y: labels})
    return float(c), float(acc)


IMPROVEMENTS = """The weights start from a normal distribution with standard deviation 1,
which is far too large for 784 inputs: a Xavier initialization would train faster.
I would also add a second hidden layer, use dropout against overfitting, and train
for more epochs while watching a validation set."""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    Z2, A2 = forward_propagation(X, initialize_parameters())
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    train_step = create_train_step(cost)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist)
    print("Accuracy:", evaluate(sess, cost, accuracy, X, Y, mnist.test.images, mnist.test.labels)[1])
