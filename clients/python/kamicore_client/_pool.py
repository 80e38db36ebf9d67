"""The client's own protobuf descriptor pool (see clients/python/generate.py): the server
package registers the same kamicore.v1 symbols in protobuf's default pool, so the client's
generated modules register theirs here and the two never meet."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
