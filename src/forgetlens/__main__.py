from forgetlens.cli import main

main()
