from vidface.cli import program

program()
