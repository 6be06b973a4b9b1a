"""`python -m m3l.run.train model=NAME [overrides]` (see `--help`)."""

from m3l.run._app import make_main

main = make_main("train")

if __name__ == "__main__":
    main()
