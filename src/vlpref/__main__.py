"""`python -m vlpref` runs the CLI."""

from vlpref.cli import main

if __name__ == "__main__":
    main()
