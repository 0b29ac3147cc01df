"""pytest runs these notebooks (under nbval) in quick mode unless TFA_QUICK is already set: small
sizes and few steps, so that the whole course runs in a couple of minutes on two CPU cores."""

import os

os.environ.setdefault("TFA_QUICK", "1")
