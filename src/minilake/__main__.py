from minilake.apps.cli import run_and_exit

if __name__ == "__main__":       # not again in a Dask worker started by spawning
    run_and_exit()
