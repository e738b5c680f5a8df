import sys
print(open(sys.argv[2]).read())
