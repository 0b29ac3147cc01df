"""``python -m tfa_core ...`` is the ``tfa`` command."""

from .cli import main_exit

main_exit()
