# expect: {"Q3": 7.1429, "Q4": 3.3333, "model": "any"}
# feedback: {"Q3": "Glorot", "Q4": "ReLU"}
# source: aymericdamien/TensorFlow-Examples, examples/3_NeuralNetworks/neural_network_raw.py
# port: the source's quirks kept: no activation between the fully connected layers (the
#   source's "Hidden fully connected layer" has none), tf.random_normal weights and biases
#   (stddev 1), the v1 softmax cross-entropy averaged over the batch, an AdamOptimizer built
#   first and minimized on a second line, "Epoch: 0004 cost=0.071234567" progress lines of
#   the cost averaged since the last print, the accuracy on the softmax of the logits.
# labels (from the starter's text): Q4 loses "LINEAR -> RELU -> LINEAR -> SOFTMAX" (no
#   ReLU); Q3 loses "a scale that suits the layer size". model: unasserted, a judgment call (a linear
#   network with stddev-1 weights: how far it gets in 1,500 steps is not the text's call).
"""A port of a raw-TensorFlow MNIST network (no hidden activation) into the contract."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist

n_input = 784  # MNIST data input (img shape: 28*28)
n_classes = 10  # MNIST total classes (0-9 digits)


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    # tf Graph input
    X = tf.placeholder("float", [None, 28, 28])
    Y = tf.placeholder("float", [None, n_classes])
    return X, Y


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
    return {'W1': weights['h1'], 'b1': biases['b1'], 'W2': weights['out'], 'b2': biases['out']}


def forward_propagation(X, parameters):
    x = tf.reshape(X, [-1, n_input])
    # Hidden fully connected layer
    layer_1 = tf.add(tf.matmul(x, parameters['W1']), parameters['b1'])
    # Output fully connected layer with a neuron for each class
    out_layer = tf.matmul(layer_1, parameters['W2']) + parameters['b2']
    return out_layer, tf.nn.softmax(out_layer)


def compute_cost(Z2, Y):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=Z2, labels=Y))


def compute_accuracy(Z2, Y):
    pred = tf.nn.softmax(Z2)  # Apply softmax to logits
    correct_prediction = tf.equal(tf.argmax(pred, 1), tf.argmax(Y, 1))
    return tf.reduce_mean(tf.cast(correct_prediction, "float"))


def create_train_step(cost, learning_rate=0.001):
    optimizer = tf.train.AdamOptimizer(learning_rate=learning_rate)
    train_op = optimizer.minimize(cost)
    return train_op


def initialize_session():
    init = tf.global_variables_initializer()
    sess = tf.Session()
    sess.run(init)
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    history = []
    avg_cost = 0.
    for step in range(num_steps):
        batch_x, batch_y = mnist.train.next_batch(batch_size)
        # Run optimization op (backprop) and cost op (to get loss value)
        _, c = sess.run([train_step, cost], feed_dict={X: batch_x, Y: batch_y})
        history.append(float(c))
        avg_cost += c / print_every
        if (step + 1) % print_every == 0:
            print("Epoch:", '%04d' % (step + 1), "cost={:.9f}".format(avg_cost))
            avg_cost = 0.
    print("Optimization Finished!")
    return history


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    loss, acc = sess.run([cost, accuracy], feed_dict={X: images, Y: labels})
    return float(loss), float(acc)


IMPROVEMENTS = """Use a smaller learning rate schedule with decay, normalize the input
pixels, add batch normalization after the hidden layer and more hidden units, and stop
early once the validation accuracy stops improving."""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    Z2, A2 = forward_propagation(X, initialize_parameters())
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    sess = None
    train_step = create_train_step(cost)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist)
    print("Accuracy:", evaluate(sess, cost, accuracy, X, Y, mnist.test.images, mnist.test.labels)[1])
