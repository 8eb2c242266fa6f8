"""The seed's hello-world swarm: gateway -> hello -> goodbye, answered over real HTTP."""

from bytewax_nb import Swarm

swarm = Swarm("hello-world", runtime="process")
swarm.gateway("hello-world")


@swarm.bee(input="hello-world")
def hello(payload):
    print("hello", payload["name"])
    return payload


@swarm.bee(input="hello")
def goodbye(payload, ctx):
    ctx.respond(f"goodbye {payload['name']}")


if __name__ == "__main__":
    with swarm:
        print("gateway:", swarm.url("hello-world"))
        print("answer:", swarm.request("hello-world", {"name": "Bee"}))
