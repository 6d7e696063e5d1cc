"""`python -m opgrpo ...` is the same as the `opgrpo` console script."""
from opgrpo.cli import main

if __name__ == "__main__":
    main()
