"""``python -m cryonet.cli`` (and ``torchrun ... -m cryonet.cli train ...``) runs the CLI."""

from cryonet.cli import main

if __name__ == "__main__":
    main()
