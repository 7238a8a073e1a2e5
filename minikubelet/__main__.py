from minikubelet.cli import main

main()
