"""`python -m opgrpo ...` is the same as the `opgrpo` console script."""
from opgrpo.app.cli import main

if __name__ == "__main__":
    main()
