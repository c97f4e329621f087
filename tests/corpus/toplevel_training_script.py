# expect: {}
#!/usr/bin/env python
# coding: utf-8
# A notebook exported with `jupyter nbconvert --to script`: the tutorial runs at top level
# (data loaded, the network built, trained and evaluated, a plot). The grader skips that code,
# runs the lines that read the data's shape on the grading data, and grades the functions.

# In[1]:


get_ipython().run_line_magic('matplotlib', 'inline')
import numpy as np
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
import matplotlib.pyplot as plt
from mnist_loader import load_mnist


# In[2]:


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
    X_flat = tf.reshape(X, [-1, n_pixels])
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



# In[3]:


mnist = load_dataset()
n_pixels = mnist.train.images.shape[1] * mnist.train.images.shape[2]
print(mnist.train.num_examples, "training images of", n_pixels, "pixels")


# In[4]:


X, Y = create_placeholders()
parameters = initialize_parameters(128)
Z2, A2 = forward_propagation(X, parameters)
cost = compute_cost(Z2, Y)
accuracy = compute_accuracy(Z2, Y)
train_step = create_train_step(cost, 0.001)
sess = initialize_session()


# In[5]:


costs = train(sess, train_step, cost, X, Y, mnist, num_steps=2000, print_every=200)
plt.plot(costs)
plt.show()


# In[6]:


for name, split in (("train", mnist.train), ("test", mnist.test)):
    print(name, evaluate(sess, cost, accuracy, X, Y, split.images, split.labels))
sess.close()
