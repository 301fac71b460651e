from ispqueue.cli import main

main()
