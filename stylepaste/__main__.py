"""``python -m stylepaste``: the same as the ``stylepaste`` command."""

from stylepaste.cli import main

raise SystemExit(main())
