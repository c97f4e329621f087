# expect: {"Q3": 7.1429, "Q9": "any", "model": "any"}
# feedback: {"Q3": "Glorot", "Q7": "advice"}
# source: callaunchpad/tensorflow_samples, mnist/basic/basic_mnist.py
# port: the source's style kept (one hidden layer instead of three): per-layer dicts of
#   'weights' and 'biases' from tf.random_normal (stddev 1), relu(tf.add(tf.matmul(...))),
#   the v1 softmax cross-entropy averaged over the batch, AdamOptimizer() at its default
#   rate 0.001 (the learning_rate argument unused), 'float' placeholders, and progress
#   printed as print('Epoch', epoch, 'completed out of', epochs, 'loss:', epoch_loss) where
#   epoch_loss is the SUM of the batch costs since the last print, not a cost.
# labels (from the starter's text): Q3 loses "a scale that suits the layer size" (stddev 1);
#   Q7 full marks (its own rate is advice). Q9: unasserted, a judgment call: the lines show
#   an epoch counter and a sum of batch costs; whether that is "the iteration number and
#   the cost" is for a person to say. model: unasserted, a judgment call (stddev-1 weights).
"""A port of a three-layer MNIST sample (reduced to the contract's one hidden layer)."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

from mnist_loader import load_mnist

# number of classes
n_classes = 10


def load_dataset(path=None):
    return load_mnist(path)


def create_placeholders():
    # Placeholder represents 28 x 28 pixel matrix
    data = tf.placeholder('float', [None, 28, 28])
    # Placeholder represents labels
    label = tf.placeholder('float', [None, n_classes])
    return data, label


def initialize_parameters(n_hidden=128):
    # weight vectors = num_inputs * num_nodes
    hidden_1_layer = {'weights': tf.Variable(tf.random_normal([784, n_hidden])),
                      'biases': tf.Variable(tf.random_normal([n_hidden]))}
    output_layer = {'weights': tf.Variable(tf.random_normal([n_hidden, n_classes])),
                    'biases': tf.Variable(tf.random_normal([n_classes]))}
    return {"W1": hidden_1_layer['weights'], "b1": hidden_1_layer['biases'],
            "W2": output_layer['weights'], "b2": output_layer['biases']}


def forward_propagation(X, parameters):
    data = tf.reshape(X, [-1, 784])
    # NN Model: (input_data * weight) + bias
    l1 = tf.nn.relu(tf.add(tf.matmul(data, parameters['W1']), parameters['b1']))
    output = tf.matmul(l1, parameters['W2']) + parameters['b2']
    return output, tf.nn.softmax(output)


def compute_cost(Z2, Y):
    # cost function: calculates difference between prediction and known label (one_hot format)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=Z2, labels=Y))


def compute_accuracy(Z2, Y):
    # check if the prediction was the same as the actual label
    correct = tf.equal(tf.argmax(Z2, 1), tf.argmax(Y, 1))
    return tf.reduce_mean(tf.cast(correct, 'float'))


def create_train_step(cost, learning_rate=0.001):
    # default learning rate = 0.001
    optimizer = tf.train.AdamOptimizer().minimize(cost)
    return optimizer


def initialize_session():
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return sess


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    hm_epochs = num_steps // print_every
    costs = []
    epoch_loss = 0
    for step in range(num_steps):
        # moves through dataset in chunks
        epoch_data, epoch_label = mnist.train.next_batch(batch_size)
        # tf session modifies weights in layers
        _, c = sess.run([train_step, cost], feed_dict={X: epoch_data, Y: epoch_label})
        costs.append(float(c))
        epoch_loss += c
        if (step + 1) % print_every == 0:
            print('Epoch', step // print_every, 'completed out of', hm_epochs, 'loss:', epoch_loss)
            epoch_loss = 0
    return costs


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    return float(cost.eval({X: images, Y: labels}, session=sess)), \
        float(accuracy.eval({X: images, Y: labels}, session=sess))


IMPROVEMENTS = """The weights are drawn with a standard deviation of one, which makes the
first epochs very noisy; a Xavier or He initialization would fix that. Dropout between
the layers and a learning rate schedule would also improve the final test accuracy."""


if __name__ == "__main__":
    mnist = load_dataset()
    X, Y = create_placeholders()
    Z2, A2 = forward_propagation(X, initialize_parameters())
    cost = compute_cost(Z2, Y)
    accuracy = compute_accuracy(Z2, Y)
    train_step = create_train_step(cost)
    sess = initialize_session()
    train(sess, train_step, cost, X, Y, mnist)
    print('Accuracy:', evaluate(sess, cost, accuracy, X, Y, mnist.test.images, mnist.test.labels)[1])
