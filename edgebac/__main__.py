from edgebac.cli import main

main()
