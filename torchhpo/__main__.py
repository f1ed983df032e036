import sys

from torchhpo.cli import main

sys.exit(main())
