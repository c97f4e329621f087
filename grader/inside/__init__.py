"""The grader's side inside the sandbox: everything that runs beside the submission.

``runner.py`` imports the submission and runs the probes (``probes.py``, on
the plumbing of ``harness.py``), and sends their results to the parent in
the wire format of ``protocol.py``; ``zygote_server.py`` is the warm
process that forks such children. The package is the trust boundary made
visible: it imports nothing of the grader outside it (standard library,
numpy and TensorFlow only; ``tests/test_layout.py`` checks it), is copied
whole into each sandbox's work directory as ``grader_inside``, and holds no
secret. The parent imports its wire format (``protocol.py``) from here.
"""
