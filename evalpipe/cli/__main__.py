from evalpipe.cli import run

run()
