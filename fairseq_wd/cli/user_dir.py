"""`fairseq-wd-user-dir`: prints the installed plugin folder, for `--user-dir $(fairseq-wd-user-dir)`."""
import argparse
import os


def get_parser():
    return argparse.ArgumentParser(prog="fairseq-wd-user-dir", description=__doc__)


def main(argv=None):
    get_parser().parse_args(argv)
    print(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    main()
