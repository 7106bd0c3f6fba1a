"""``python -m gaitcli`` runs the same app as the ``gait`` console script."""

from gaitcli.cli import main

if __name__ == "__main__":
    main()
