"""`python -m m3l.run.correct model=NAME [overrides]` (see `--help`)."""

from m3l.run._app import make_main

main = make_main("correct")

if __name__ == "__main__":
    main()
