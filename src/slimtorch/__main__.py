import sys

from slimtorch.cli import main

sys.exit(main())
