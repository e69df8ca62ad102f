from lenet_dist.cli import app

app(prog_name="lenet-dist")
