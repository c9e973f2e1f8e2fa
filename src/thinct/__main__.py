"""`python -m thinct`: the same command line as the `thinct` console script."""

from thinct.cli.app import main

if __name__ == "__main__":
    main()
