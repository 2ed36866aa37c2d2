from fmnist_cluster.cli import main

main()
