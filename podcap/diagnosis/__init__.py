"""``podcap diagnose SRC DST``: the troubleshooting guide in one command.

It locates both Pods, captures at once in the source Pod, on its node's NIC, on the
destination node's NIC and in the destination Pod (one helper Pod per node, as ``podcap
capture --also-node``), sends a probe from inside the source Pod's network namespace, brings
every capture home and lines them up with the path report (``podcap.path``): where the probe's
packets stopped, why, and what to change. It sits at the edge, beside the CLI: it uses both
wings (acquire: ``capture``, ``netns``; analyze: ``analysis``, ``path``), and neither imports it.

- :mod:`.probe`: the probe (a TCP connection carrying a marker, or an HTTP GET) as an argv;
- :mod:`.plan`: what the user named -> the Pods, the port, the captures, the probe;
- :mod:`.run`: the captures and the probe together, the bundle, the verdict;
- :mod:`.api`: ``podcap.diagnose(...)``, the same steps as one library call.
"""

from podcap.diagnosis.plan import DiagnoseRequest, plan_diagnosis
from podcap.diagnosis.run import Diagnosis, run_diagnosis

__all__ = ["DiagnoseRequest", "Diagnosis", "plan_diagnosis", "run_diagnosis"]
