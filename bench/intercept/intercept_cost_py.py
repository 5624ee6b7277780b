"""The Python channels of bench/intercept/intercept_cost.erl: one without
an intercept (the fastlane), one whose intercept pushes the payload as it
came (async def: on the worker's loop, no thread-pool queue bound)."""

from hornbeam_channels import channel

plain = channel("pyplain:*")
icpt = channel("pyicpt:*")


@plain.on_join
@icpt.on_join
async def join(topic, topic_params, params, socket):
    return ("ok", {}, socket)


@icpt.intercept("msg")
async def msg(payload, socket):
    return ("push", payload, socket)
