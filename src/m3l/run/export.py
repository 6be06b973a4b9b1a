"""`python -m m3l.run.export model=NAME checkpoint=PATH format=onnx|pt2|torchscript` (see `--help`)."""

from m3l.run._app import make_main

main = make_main("export")

if __name__ == "__main__":
    main()
