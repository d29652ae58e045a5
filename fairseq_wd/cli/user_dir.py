"""`fairseq-wd-user-dir`: prints the installed plugin folder, for `--user-dir $(fairseq-wd-user-dir)`."""
import os


def main():
    print(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    main()
