"""`python -m m3l.run.test model=NAME [overrides]` (see `--help`)."""

from m3l.run._app import make_main

main = make_main("test")

if __name__ == "__main__":
    main()
