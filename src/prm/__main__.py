from prm.cli import main

main()
