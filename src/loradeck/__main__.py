from loradeck.cli import main

main()
