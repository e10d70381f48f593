"""The command line and the local servers: ``goraxfast run|publish|stats|queues``
(:mod:`.main`), the ``make run`` demo (:mod:`.demo`), and the loopback SQS servers it and the
tests start (:mod:`.moto_server`, :mod:`.localstack`).

The top layer: may import anything in goraxfast; nothing imports it (except ``__main__``).
"""
