"""`python -m cli` == `mplab`."""

from cli.main import main

main()
