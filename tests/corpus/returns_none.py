# expect: {"Q2": 0, "Q3": 0, "Q4": 0, "Q5": 0, "Q6": 0, "Q7": 0, "Q8": 0, "Q9": 0, "Q10": 0, "Q11": 0, "model": 0}
# feedback: {"Q2": "NoneType", "Q3": "NoneType", "Q4": "NoneType", "Q5": "None", "Q6": "None", "Q8": "not a tf.Session", "Q9": "not a list", "Q10": "NoneType", "Q11": "not a string", "model": "pair"}
"""Every function is a stub that returns None, and IMPROVEMENTS is None: each
item must say what came back instead of failing with a grader error."""

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()


def load_dataset(path=None):
    pass


def create_placeholders():
    pass


def initialize_parameters(n_hidden=128):
    pass


def forward_propagation(X, parameters):
    pass


def compute_cost(Z2, Y):
    pass


def compute_accuracy(Z2, Y):
    pass


def create_train_step(cost, learning_rate=0.001):
    pass


def initialize_session():
    pass


def train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000):
    pass


def evaluate(sess, cost, accuracy, X, Y, images, labels):
    pass


IMPROVEMENTS = None
