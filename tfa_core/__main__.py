"""``python -m tfa_core ...`` is the ``tfa`` command."""

from tfa_core.cli import main_exit

main_exit()
