"""The path of a connection through several capture points: where its packets were seen,
where they stopped, and why (the ``path`` and ``hops`` reports, ``podcap.reports.path``).

``points`` names the capture points and orders them along the path; ``journey`` follows each
connection from point to point and gives its outcome; ``explain`` says why, in the words of the
troubleshooting guide, and what to change.
"""
