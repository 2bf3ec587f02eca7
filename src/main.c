/*
 * main.c - baton's entry point: global options, then dispatch to src/cmd/.
 */
#include "cmd/cmd.h"

int main(int argc, char **argv)
{
    return bt_cmd_main(argc, argv);
}
