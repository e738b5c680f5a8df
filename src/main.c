/* main.c - estgw entry point: command line, then named set-up steps. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <coap3/coap.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <mbedtls/version.h>

#include "estgw_build.h"

static void print_version(void)
{
	char mbed[32];
	mbedtls_version_get_string_full(mbed);
	printf("estgw %s\n", ESTGW_VERSION);
	printf("libcoap %s (%s)\n", coap_package_version(), coap_string_tls_version(NULL, 0) ? "" : "");
	printf("libcurl %s\n", curl_version_info(CURLVERSION_NOW)->version);
	printf("libevent %s\n", event_get_version());
	printf("%s\n", mbed);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		print_version();
		return 0;
	}
	fprintf(stderr, "usage: estgw -c FILE [--check] [--syslog] [-v]\n");
	return 2;
}
