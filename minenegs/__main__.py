from minenegs.cli import main

main()
