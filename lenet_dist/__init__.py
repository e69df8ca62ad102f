"""lenet-dist: LeNet5 on MNIST, trained the way production jobs are."""

import time

# the job's clock starts when the package is first imported, i.e. at process start
PROCESS_START = time.time()
