/* `p2prpc generate-broker`: a broker program serving the header's functions
 * (p2p_broker_main with their schemas compiled in), its CMake project, a
 * Dockerfile, and a compose file with MongoDB. */
#include "generate_internal.h"

static void brokerapp(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_banner_c(b, h);
    p2p__cg_printf(b,
                   "/* The broker of the functions of %s: p2p_broker_main() with their\n"
                   " * schemas compiled in. Flags: brokerapp --help (docs/cli.md,\n"
                   " * \"p2prpc-broker\"). */\n",
                   p2p__cg_basename(h->path));
    p2p__cg_printf(b, "#include <p2prpc/broker.h>\n"
                      "#include <p2prpc/stub.h>\n\n"
                      "#include <stddef.h>\n"
                      "#include <stdio.h>\n\n");
    p2p__cg_schema_table(b, h);
    p2p__cg_printf(b,
                   "\nint main(int argc, char **argv) {\n"
                   "    p2p_schema **schemas = NULL;\n"
                   "    p2p_error err = {0};\n"
                   "    if (p2p_stub_schemas_new(p2p_functions, N_FUNCTIONS, &schemas, &err) != 0) "
                   "{\n"
                   "        fprintf(stderr, \"brokerapp: %%s\\n\", err.msg);\n"
                   "        return 1;\n"
                   "    }\n"
                   "    int rc = p2p_broker_main(argc, argv, (const p2p_schema *const *)schemas, "
                   "N_FUNCTIONS);\n"
                   "    p2p_stub_schemas_free(schemas, N_FUNCTIONS);\n"
                   "    return rc;\n"
                   "}\n");
}

static void cmakelists(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_cmake_prelude(b, h, "brokerapp");
    p2p__cg_printf(b, "add_executable(brokerapp brokerapp.c)\n"
                      "target_link_libraries(brokerapp PRIVATE p2prpc::p2prpc)\n");
}

/* Brokers over MongoDB: a named volume for the database, a healthcheck the
 * brokers wait on, brokers that scale (each its own node identity, the
 * calls and blobs in MongoDB), and the network the workers' compose file
 * joins. */
static void compose(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_banner_hash(b, h);
    p2p__cg_printf(
        b,
        "# The broker of %s over MongoDB (docs/store.md). Start, scaled to two brokers:\n"
        "#   P2PRPC_SOURCE=PATH/TO/p2prpc docker compose -f broker.docker-compose.yml \\\n"
        "#     up -d --scale broker=2\n"
        "# Every broker serves every call and blob. Workers join the network \"p2prpc\"\n"
        "# and reach a broker at http://broker:8470.\n"
        "services:\n"
        "  mongo:\n"
        "    image: mongo:7\n"
        "    restart: unless-stopped\n"
        "    volumes:\n"
        "      - mongo-data:/data/db\n"
        "    networks:\n"
        "      - p2prpc\n"
        "    healthcheck:\n"
        "      test: [\"CMD\", \"mongosh\", \"--quiet\", \"--eval\", "
        "\"db.adminCommand('ping').ok\"]\n"
        "      interval: 10s\n"
        "      timeout: 5s\n"
        "      retries: 12\n",
        p2p__cg_basename(h->path));
    p2p__cg_printf(b,
                   "  broker:\n"
                   "    image: p2prpc-brokerapp\n"
                   "    build:\n"
                   "      context: .\n"
                   "      additional_contexts:\n"
                   "        p2prpc: ${P2PRPC_SOURCE:?set P2PRPC_SOURCE to the p2prpc source tree}\n"
                   "    restart: unless-stopped\n"
                   "    command: [\"--listen\", \"0.0.0.0:8470\", \"--store\", "
                   "\"mongodb://mongo:27017/p2prpc\",\n"
                   "              \"--public-url\", \"http://broker:8470\"]\n"
                   "    depends_on:\n"
                   "      mongo:\n"
                   "        condition: service_healthy\n"
                   "    ports:\n"
                   "      - \"8470-8479:8470\"\n"
                   "    healthcheck:\n"
                   "      test: [\"CMD\", \"curl\", \"-fsS\", \"http://127.0.0.1:8470/health\"]\n"
                   "      interval: 10s\n"
                   "      timeout: 5s\n"
                   "      retries: 3\n"
                   "    networks:\n"
                   "      - p2prpc\n"
                   "volumes:\n"
                   "  mongo-data:\n"
                   "networks:\n"
                   "  p2prpc:\n"
                   "    name: p2prpc\n");
}

int p2p_cg_generate_broker(const p2p_cg_header *h, const p2p_cg_options *opts, p2p_error *err) {
    int rc = p2p__cg_prepare(h, opts, false, err);
    p2p__cg_buf b = {0};
    if (rc == 0) {
        brokerapp(&b, h);
        rc = p2p__cg_write(opts->out_dir, "brokerapp.c", &b, err);
    }
    if (rc == 0) {
        cmakelists(&b, h);
        rc = p2p__cg_write(opts->out_dir, "CMakeLists.txt", &b, err);
    }
    if (rc == 0) {
        p2p__cg_dockerfile(&b, h, "brokerapp");
        rc = p2p__cg_write(opts->out_dir, "Dockerfile", &b, err);
    }
    if (rc == 0) {
        compose(&b, h);
        rc = p2p__cg_write(opts->out_dir, "broker.docker-compose.yml", &b, err);
    }
    return rc;
}
